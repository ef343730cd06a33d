select n_nationkey, n_name from {{ source('tpch', 'nation') }} where n_regionkey = 1
