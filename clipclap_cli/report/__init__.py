"""Reports over finished runs: results tables in every format, error bars and paired tests, the
figures and the standalone HTML page."""
