"""SQL stages: parse and classify, resolve names, rewrite, generate for the backend. All pure."""
