"""The execution process: a child of the agent that runs targets.

``process`` is its main loop (started as ``python -m coflux.execution``)
and runs one target at a time, ``connection`` is its socket to the agent and
the reader thread that routes what arrives, ``channel`` is what a running
target asks of its agent (calls, results, logs), ``capture`` turns stdout and
stderr into log messages, ``asset_uploads`` persists and restores assets,
``loader`` imports the user's modules and builds their manifests,
``framing`` is the length-prefixed channel to the agent, ``submitted`` holds
an outcome until its submissions are acknowledged, ``truncate`` cuts what is
too large to send, ``checkpoints`` binds a checkpoint's arguments and
``processes`` kills every process a target started. Nothing here imports the
CLI, the workspace or the server."""
