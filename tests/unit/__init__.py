"""Fast tests of pure logic: no model, no fake engine, no server on a model, no process of
the CLI. Part of the fast loop."""
