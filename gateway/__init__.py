"""Query gateway: the Trino protocol in front of warehouses, with policy rewriting, admission, caching,
audit and chargeback."""

__version__ = "0.1.0"
