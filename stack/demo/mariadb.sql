-- The demo tables of the local stack's MariaDB database `mesh` (idempotent; run by `make up`).
CREATE TABLE IF NOT EXISTS mesh.shipments (
    id          bigint PRIMARY KEY,
    order_id    bigint NOT NULL,
    carrier     varchar(64) NOT NULL,
    status      varchar(32) NOT NULL,
    shipped_at  datetime(6)
);
CREATE TABLE IF NOT EXISTS mesh.debezium_signal (
    id    varchar(64) PRIMARY KEY,
    type  varchar(32) NOT NULL,
    data  varchar(2048)
);
