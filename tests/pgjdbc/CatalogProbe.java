// Run by tests/test_pg_catalog_wire.py: pgJDBC's DatabaseMetaData, unmodified, against the emulated catalog.
import java.sql.*;

public class CatalogProbe {
    public static void main(String[] args) throws Exception {
        try (Connection c = DriverManager.getConnection(args[0])) {
            DatabaseMetaData m = c.getMetaData();
            try (ResultSet r = m.getCatalogs()) { while (r.next()) System.out.println("catalog=" + r.getString(1)); }
            try (ResultSet r = m.getSchemas()) { while (r.next()) System.out.println("schema=" + r.getString(1)); }
            try (ResultSet r = m.getTables(null, null, "%", new String[] {"TABLE", "VIEW"})) {
                while (r.next()) System.out.println("table=" + r.getString(2) + "." + r.getString(3) + "|" + r.getString(4));
            }
            try (ResultSet r = m.getColumns(null, "tpch", "nation", "%")) {
                while (r.next()) System.out.println("column=" + r.getString(4) + "|" + r.getInt(5) + "|" + r.getString(6));
            }
            try (ResultSet r = m.getPrimaryKeys(null, "tpch", "nation")) { while (r.next()) System.out.println("pk=" + r.getString(4)); }
            int types = 0;
            try (ResultSet r = m.getTypeInfo()) { while (r.next()) types++; }
            System.out.println("types=" + types);
        }
    }
}
