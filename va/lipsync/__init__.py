"""The lip-sync stage: pluggable providers that turn the visual stage's video and the padded audio into
``lipsync/output.mp4``, checked before and after (docs/LIPSYNC_INTERFACE.md)."""
