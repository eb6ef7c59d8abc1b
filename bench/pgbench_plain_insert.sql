-- The SQL of the reference "plain DRF create" (/ref/create): one INSERT in autocommit.
-- With pgbench_create.sql it shows how far apart the two creates are in SQL alone.
INSERT INTO django_orders_order (id, tenant_id, status, version, total_cents, currency, metadata, created_at, updated_at, confirmed_at, closed_at) VALUES (gen_random_uuid(), 'bench-pgbench-plain', 'draft', 1, 1234, 'EUR', '{"source": "bench"}', now(), now(), NULL, NULL);
