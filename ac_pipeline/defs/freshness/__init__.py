"""Freshness: the pipeline's inputs as observable source assets, and declarative automation that syncs an
audience by itself when its inputs change (issue 13, item 5). Off until an operator turns it on."""
