"""The user's machine: workspace, embedded server, agent, and the connection to a server."""
