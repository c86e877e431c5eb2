"""ComfyUI as the frame generator: its health, its protocol, workflow templates, the batched stage."""
