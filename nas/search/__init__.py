"""The search stage: the loop (core), strategies, the RNN controller, rewards."""
