"""VIDAX: the HTTP API of va. Creates and starts jobs, installs assets, starts and checks ComfyUI,
serves manifests, logs and finished videos (docs/VIDAX_API.md)."""
