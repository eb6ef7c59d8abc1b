-- The physical limit of an idempotent create: the SQL the package runs for one new key,
-- in one transaction, straight from pgbench (no HTTP, no Python). Run by run_api.py as
--   pgbench -n -c 8 -j 1 -T 20 -f bench/pgbench_create.sql <bench database>
-- 1. claim the (tenant, key) slot (the package's INSERT … ON CONFLICT DO NOTHING
-- RETURNING), 2. insert the order, 3. insert its order.created event and NOTIFY the
-- relays (2 and 3 in one round trip with `\;`, as the package sends them on PostgreSQL),
-- 4. store the response on the key.
\set n random(1, 4000000000000000)
BEGIN;
INSERT INTO django_orders_idempotency_key (tenant_id, key, method, path, fingerprint, state, response_status, response_body, response_headers, created_at, expires_at) VALUES ('bench-pgbench', 'pgb-' || :client_id || '-' || :n, 'POST', '/orders', encode(sha256(:n::text::bytea), 'hex'), 'processing', NULL, '', '{}', now(), now() + interval '1 hour') ON CONFLICT (tenant_id, key) DO NOTHING RETURNING id \gset key_
INSERT INTO django_orders_order (id, tenant_id, status, version, total_cents, currency, metadata, created_at, updated_at, confirmed_at, closed_at) VALUES (md5('o' || :client_id || '-' || :n)::uuid, 'bench-pgbench', 'draft', 1, 1234, 'EUR', '{"source": "bench"}', now(), now(), NULL, NULL) \;
INSERT INTO django_orders_outbox_event (id, tenant_id, aggregate_type, aggregate_id, aggregate_version, type, payload, created_at, status, attempts, available_at, lease_token, leased_until, last_error, published_at) VALUES (gen_random_uuid(), 'bench-pgbench', 'order', md5('o' || :client_id || '-' || :n)::uuid, 1, 'order.created', '{"id": "0190b1a2-0000-7000-8000-000000000000", "tenantId": "bench-pgbench", "status": "draft", "version": 1, "totalCents": 1234, "currency": "EUR", "metadata": {"source": "bench"}, "createdAt": "2026-11-25T18:00:00.000000Z", "updatedAt": "2026-11-25T18:00:00.000000Z", "confirmedAt": null, "closedAt": null}', now(), 'pending', 0, now(), NULL, NULL, '', NULL) \;
NOTIFY django_orders_outbox;
UPDATE django_orders_idempotency_key SET state = 'completed', response_status = 201, response_body = '{"id": "0190b1a2-0000-7000-8000-000000000000", "tenantId": "bench-pgbench", "status": "draft", "version": 1, "totalCents": 1234, "currency": "EUR", "metadata": {"source": "bench"}, "createdAt": "2026-11-25T18:00:00.000000Z", "updatedAt": "2026-11-25T18:00:00.000000Z", "confirmedAt": null, "closedAt": null}', response_headers = '{"Location": "http://127.0.0.1/orders/0190b1a2-0000-7000-8000-000000000000", "ETag": "\"1\""}' WHERE id = :key_id;
COMMIT;
