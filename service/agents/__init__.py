"""Agent presets (data: how to run each agent CLI unattended in the sandbox) and the
renderer of Claude Code's stream-json output into readable terminal lines."""
