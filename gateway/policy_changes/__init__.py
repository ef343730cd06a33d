"""Changing policies safely: replay audited statements under proposed files (`impact`) and probe the policy
in force with expected outcomes (`canaries`)."""
