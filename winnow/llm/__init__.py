"""Generation backends behind one small synchronous batch interface (``base.Backend``):
onnxruntime-genai and transformers in process, OpenAI-compatible HTTP, vLLM offline.
Heavy libraries are imported only when a backend is built."""
