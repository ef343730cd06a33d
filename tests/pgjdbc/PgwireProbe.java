// Run by tests/test_pgwire.py against a gateway: pgJDBC (Debian libpostgresql-jdbc-java) unmodified.
import java.sql.*;

public class PgwireProbe {
    public static void main(String[] args) throws Exception {
        String url = args[0];
        try (Connection c = DriverManager.getConnection(url)) {
            System.out.println("version=" + c.getMetaData().getDatabaseProductVersion());
            try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("SELECT n_name, n_nationkey FROM nation WHERE n_nationkey < 3 ORDER BY 2")) {
                while (r.next()) System.out.println("row=" + r.getString(1) + "|" + r.getInt(2));
            }
            for (int round = 0; round < 3; round++) {  // prepareThreshold=1: server-prepared, binary results
                try (PreparedStatement p = c.prepareStatement("SELECT n_name, CAST(n_nationkey AS BIGINT) AS k, CAST(1.5 AS NUMERIC(5,2)) AS n, DATE '2024-02-29' AS d, TIMESTAMP '2024-02-29 13:14:15' AS ts, true AS b, CAST(2.25 AS DOUBLE PRECISION) AS f FROM nation WHERE n_nationkey = ?")) {
                    p.setInt(1, 5 + round);
                    try (ResultSet r = p.executeQuery()) {
                        while (r.next()) System.out.println("typed=" + r.getString(1) + "|" + r.getLong(2) + "|" + r.getBigDecimal(3) + "|" + r.getDate(4) + "|" + r.getTimestamp(5) + "|" + r.getBoolean(6) + "|" + r.getDouble(7));
                    }
                }
            }
            try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("SELECT c_name FROM customer ORDER BY c_custkey LIMIT 1")) {
                while (r.next()) System.out.println("masked=" + r.getString(1));
            }
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                s.setFetchSize(4);  // portal with maxRows: PortalSuspended between batches
                int n = 0;
                try (ResultSet r = s.executeQuery("SELECT n_nationkey FROM nation ORDER BY 1")) { while (r.next()) n++; }
                System.out.println("fetched=" + n);
            }
            c.commit();
            c.setAutoCommit(true);
            try (Statement s = c.createStatement()) {
                s.executeQuery("SELECT * FROM no_such_table");
            } catch (SQLException e) {
                System.out.println("sqlstate=" + e.getSQLState());
            }
        }
    }
}
