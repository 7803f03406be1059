"""Ship: the model card, GGUF for llama.cpp/Ollama, hub push."""
