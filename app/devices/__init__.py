"""Hardware at the edge: microphone, speaker, camera. Everything here may be absent."""
