"""One module per role. Each builds that role's Faust app, so ``faust -A`` can load it."""
