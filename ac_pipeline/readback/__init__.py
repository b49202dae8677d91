"""What comes home from ActiveCampaign: each list read back (who is on it, in which status, and how that
status came about), reconciled with the sync snapshot, and written with the account's lists and tags to a
DuckDB file that audience SQL and the customer 360's owner can query."""
