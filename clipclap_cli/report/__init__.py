"""Reports over finished runs: the runs read and their files checked, seeds grouped into cells,
error bars and paired tests, results tables in every format, the figures and the standalone
HTML page; `assemble` puts them together."""
