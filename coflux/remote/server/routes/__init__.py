"""HTTP and WebSocket routes, one module per resource; handlers stay a few lines long."""
