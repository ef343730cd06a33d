"""Frontends: client protocols. Bytes in, `Session` + SQL to the pipeline, results and errors out."""
