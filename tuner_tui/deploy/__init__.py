"""Deploy and monitor: chat, serve on an OpenAI-compatible endpoint, batch predict, drift monitor."""
