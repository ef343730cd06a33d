import json
from tests.test_trino_types import CASES, run, snowflake_gateway, duckdb_gateway  # noqa: F401
import trino


def test_probe(snowflake_gateway):
    out = []
    for case in CASES:
        try:
            rows, types = run(snowflake_gateway, f"SELECT {case.sql}", legacy=True)
            out.append((case.sql, "ok", types[0], rows[0][0]))
            try:
                run(snowflake_gateway, f"SELECT {case.sql}", legacy=False)
            except Exception as e:
                out.append((case.sql, "mapped-fail", repr(e)[:200]))
        except trino.exceptions.TrinoUserError as e:
            out.append((case.sql, "error", e.error_name, e.message[:200]))
        except Exception as e:
            out.append((case.sql, "other", repr(e)[:200]))
    with open("/tmp/types2-sf-probe.json", "w") as f:
        json.dump(out, f, default=str, ensure_ascii=False, indent=0)
