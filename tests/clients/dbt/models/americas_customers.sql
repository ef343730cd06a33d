select c_nationkey, count(*) as customers from {{ source('tpch', 'customer') }} group by c_nationkey
