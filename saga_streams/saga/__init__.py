"""The saga itself: the workflow as data and the pure engine that runs it."""
