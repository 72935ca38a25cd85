-- The demo tables of the local stack's PostgreSQL database `mesh` (idempotent; run by `make up`).
CREATE TABLE IF NOT EXISTS customers (
    id          bigint PRIMARY KEY,
    name        text NOT NULL,
    email       text,
    country     text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS orders (
    id           bigint PRIMARY KEY,
    customer_id  bigint NOT NULL,
    status       text NOT NULL,
    amount       numeric(12, 2) NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    note         text
);
-- Debezium's signal table (ad-hoc incremental snapshots, i.e. online backfills).
CREATE TABLE IF NOT EXISTS debezium_signal (
    id    varchar(64) PRIMARY KEY,
    type  varchar(32) NOT NULL,
    data  varchar(2048)
);
-- Every change moves updated_at, whatever the statement sets (an incremental migration by
-- updated_at then sees every update; deletes still need a sync or CDC).
ALTER TABLE customers ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now();
CREATE OR REPLACE FUNCTION mesh_touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER customers_touch BEFORE UPDATE ON customers
    FOR EACH ROW EXECUTE FUNCTION mesh_touch_updated_at();
CREATE OR REPLACE TRIGGER orders_touch BEFORE UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION mesh_touch_updated_at();
-- Full row images, so that update and delete events carry the whole `before` row.
ALTER TABLE customers REPLICA IDENTITY FULL;
ALTER TABLE orders REPLICA IDENTITY FULL;
