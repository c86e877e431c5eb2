"""va, the VideoAudio Runner: a voice track and a start image become a finished video."""

__version__ = "0.1.0"
