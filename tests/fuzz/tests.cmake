# fuzz harness replays (added below)
