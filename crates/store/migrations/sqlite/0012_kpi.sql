-- Live KPI counters: what the committed events add up to, per unit (dim: town, workstation, grid,
-- department, class, source; key: its code), per local day and month. Maintained by the KPI reader of
-- the event log in the same transaction that moves its position; rebuilt from every history by
-- `civicgrid kpi rebuild`. One column per counter of `core::kpi::projection::Counters`, in its order.
-- Same table and columns in ../postgres/.
CREATE TABLE kpi_counts (
    dim TEXT NOT NULL,
    bucket TEXT NOT NULL,
    period TEXT NOT NULL,
    key TEXT NOT NULL,
    reported BIGINT NOT NULL DEFAULT 0,
    filed BIGINT NOT NULL DEFAULT 0,
    filed_on_time BIGINT NOT NULL DEFAULT 0,
    voided BIGINT NOT NULL DEFAULT 0,
    dispatched BIGINT NOT NULL DEFAULT 0,
    misdispatched BIGINT NOT NULL DEFAULT 0,
    handled BIGINT NOT NULL DEFAULT 0,
    handled_on_time BIGINT NOT NULL DEFAULT 0,
    closed BIGINT NOT NULL DEFAULT 0,
    closed_on_time BIGINT NOT NULL DEFAULT 0,
    closed_late BIGINT NOT NULL DEFAULT 0,
    close_secs BIGINT NOT NULL DEFAULT 0,
    rework BIGINT NOT NULL DEFAULT 0,
    extended BIGINT NOT NULL DEFAULT 0,
    parked BIGINT NOT NULL DEFAULT 0,
    returned BIGINT NOT NULL DEFAULT 0,
    rated BIGINT NOT NULL DEFAULT 0,
    satisfied BIGINT NOT NULL DEFAULT 0,
    escalated BIGINT NOT NULL DEFAULT 0,
    fixed_on_spot BIGINT NOT NULL DEFAULT 0,
    merged BIGINT NOT NULL DEFAULT 0,
    rectifications BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (dim, bucket, period, key)
) WITHOUT ROWID;
