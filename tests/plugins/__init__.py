"""Code that stands for a user's own module in tests: an environment and reward functions
defined outside the gflownets package, imported by "module:name" specs."""
