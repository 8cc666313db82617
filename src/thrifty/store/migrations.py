"""The log store's named migrations: ``(name, sql)`` pairs in portable SQL, applied in order by
:func:`thrifty.store.db.migrate` on SQLite and PostgreSQL alike. Append new ones at the end with a
new name (names sort in the order they apply); never edit or renumber one that has shipped."""

from __future__ import annotations

from typing import Any, Callable

from thrifty.store.search import install as install_prompt_search

__all__ = ["MIGRATIONS", "MIGRATION_STEPS", "PG_OVERRIDES"]

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_requests_and_steps",
        """
        CREATE TABLE requests (
            id              TEXT PRIMARY KEY,
            created         REAL NOT NULL,              -- unix time the request arrived
            key_name        TEXT,                       -- the configured key's NAME, never the key
            profile         TEXT,                       -- profile name, NULL for pass-through
            model_requested TEXT NOT NULL,
            request_json    TEXT NOT NULL,              -- the validated request body
            prompt          TEXT,                       -- last user message text
            final_model     TEXT,                       -- who answered (NULL: nobody)
            tiers_tried     TEXT NOT NULL,              -- JSON list of models called, in order
            answer          TEXT,
            input_tokens    INTEGER,
            output_tokens   INTEGER,
            cost_usd        REAL NOT NULL,              -- sum over every tier called
            latency_s       REAL,
            status          INTEGER NOT NULL,           -- HTTP status sent to the client
            error           TEXT,
            stream          INTEGER NOT NULL DEFAULT 0,
            label           REAL                        -- quality label in [0, 1] (thrifty logs label)
        );
        CREATE INDEX requests_created ON requests(created);
        CREATE TABLE steps (
            request_id      TEXT NOT NULL REFERENCES requests(id) ON DELETE CASCADE,
            idx             INTEGER NOT NULL,           -- 0, 1, … in call order
            tier            INTEGER NOT NULL,           -- index into the profile's tiers
            model           TEXT NOT NULL,
            answer          TEXT,
            score           REAL,
            threshold       REAL,
            cost_usd        REAL NOT NULL DEFAULT 0,
            latency_s       REAL,
            input_tokens    INTEGER,
            output_tokens   INTEGER,
            decision        TEXT NOT NULL,              -- accepted | escalated | failed
            error           TEXT,
            label           REAL,                       -- quality label in [0, 1] (thrifty logs label)
            PRIMARY KEY (request_id, idx)
        );
        """,
    ),
    (
        "0002_budget_ledger",
        """
        CREATE TABLE spend (
            scope     TEXT NOT NULL,                    -- 'key' | 'profile'
            name      TEXT NOT NULL,
            spent_usd REAL NOT NULL DEFAULT 0,
            PRIMARY KEY (scope, name)
        );
        CREATE TABLE reservations (
            id         TEXT NOT NULL,
            scope      TEXT NOT NULL,
            name       TEXT NOT NULL,
            amount_usd REAL NOT NULL,
            created    REAL NOT NULL,
            PRIMARY KEY (id, scope)
        );
        """,
    ),
    (
        "0003_reservation_owner",
        """
        ALTER TABLE reservations ADD COLUMN owner TEXT;   -- 'host|pid|start' of the process holding it
        """,
    ),
    (
        "0004_cache_status",
        """
        ALTER TABLE requests ADD COLUMN cache TEXT;       -- the served answer: hit | semantic | miss | bypass; NULL: no cache
        ALTER TABLE steps ADD COLUMN cache TEXT;          -- that tier's answer: hit | semantic | miss | bypass; NULL: no cache
        """,
    ),
    (
        "0005_spend_periods",
        """
        CREATE TABLE spend_period (
            scope     TEXT NOT NULL,                    -- 'key' | 'profile'
            name      TEXT NOT NULL,
            period    TEXT NOT NULL,                    -- 'day:YYYY-MM-DD' | 'month:YYYY-MM' (UTC)
            spent_usd REAL NOT NULL DEFAULT 0,
            PRIMARY KEY (scope, name, period)
        );
        -- spend logged before this migration, attributed to the UTC day and month of its request
        INSERT INTO spend_period (scope, name, period, spent_usd)
            SELECT scope, name, kind || strftime(fmt, created, 'unixepoch') AS period, SUM(cost_usd)
            FROM (SELECT 'key' AS scope, key_name AS name, created, cost_usd FROM requests WHERE key_name IS NOT NULL
                  UNION ALL
                  SELECT 'profile', profile, created, cost_usd FROM requests WHERE profile IS NOT NULL),
                 (SELECT 'day:' AS kind, '%Y-%m-%d' AS fmt UNION ALL SELECT 'month:', '%Y-%m')
            GROUP BY scope, name, period;
        """,
    ),
    (
        "0006_audits",
        """
        CREATE TABLE audits (
            request_id      TEXT PRIMARY KEY REFERENCES requests(id) ON DELETE CASCADE,
            profile         TEXT NOT NULL,
            created         REAL NOT NULL,              -- unix time the audited request arrived
            status          TEXT NOT NULL,              -- pending | done | error | skipped
            attempts        INTEGER NOT NULL DEFAULT 0, -- runs started (a crash mid-run counts)
            updated         REAL NOT NULL,              -- last change of status
            request_json    TEXT NOT NULL,              -- the request the tiers answered (messages, params, tools)
            tiers           TEXT NOT NULL,              -- JSON list: the profile's tiers, cheapest first
            reference       TEXT NOT NULL,              -- the model every answer is judged against
            judge           TEXT NOT NULL,              -- match:exact|choice|numeric|agree or the judge's name
            rubric          TEXT,                       -- absolute | pairwise (LLM judge), NULL for match
            rubric_version  TEXT,                       -- e.g. pairwise-v1, match-agree-v1
            explore         TEXT NOT NULL,              -- all | served
            served_model    TEXT,                       -- who answered the client
            served_cost_usd REAL NOT NULL DEFAULT 0,    -- what serving the request cost
            audit_cost_usd  REAL NOT NULL DEFAULT 0,    -- what the audit paid (tier calls + judge), apart from serving
            owner           TEXT,                       -- 'host|pid|start' of the process running it (last run)
            error           TEXT                        -- why the last run failed (status error | skipped)
        );
        CREATE INDEX audits_status ON audits(status, updated);
        CREATE INDEX audits_profile_created ON audits(profile, created);
        CREATE TABLE audit_answers (
            request_id       TEXT NOT NULL REFERENCES audits(request_id) ON DELETE CASCADE,
            model            TEXT NOT NULL,
            tier             INTEGER NOT NULL,          -- index in the profile's tiers; -1: a reference outside them
            answer           TEXT,
            input_tokens     INTEGER,
            output_tokens    INTEGER,
            cost_usd         REAL NOT NULL DEFAULT 0,   -- what this answer cost (while serving when reused)
            reused           INTEGER NOT NULL DEFAULT 0,-- 1: produced while serving, not paid by the audit
            quality          REAL,                      -- judged quality in [0, 1]; NULL: call or judge failed
            at_least_as_good INTEGER,                   -- 1/0: judged at least as good as the reference
            verdict          TEXT,                      -- the parsed verdict
            judge_raw        TEXT,                      -- the judge's raw reply (LLM judge)
            error            TEXT,                      -- this tier's call failed
            PRIMARY KEY (request_id, model)
        );
        """,
    ),
    (
        "0007_artefact_history",
        """
        CREATE TABLE artefact_history (
            profile   TEXT NOT NULL,
            version   INTEGER NOT NULL,                 -- 1, 2, … per profile, one per refit (refused ones too)
            path      TEXT,                             -- the artefact directory; NULL: nothing was written (refused)
            created   REAL NOT NULL,                    -- unix time
            status    TEXT NOT NULL,                    -- serving | refused | rolled_back
            evidence  TEXT NOT NULL,                    -- JSON: the refit's cross-validation evidence and rule
            PRIMARY KEY (profile, version)
        );
        """,
    ),
    (
        "0008_dashboard_indexes",
        """
        -- the dashboard (thrifty.ui): a covering index its scans of recent hours read instead of the
        -- wide rows (prompts, answers), the request list's filters, and hourly roll-ups of settled hours
        CREATE INDEX requests_dash_time ON requests(created, key_name, profile, status, cache, final_model,
                                                    tiers_tried, cost_usd, input_tokens, output_tokens, latency_s);
        CREATE INDEX requests_dash_profile ON requests(profile, created);
        CREATE INDEX requests_dash_key ON requests(key_name, created);
        CREATE TABLE dash_hourly (
            span          INTEGER NOT NULL,             -- 3600: an hour; 86400: a day (summed from its hours)
            bucket_start  BIGINT NOT NULL,              -- unix time of the UTC hour's / day's start
            profile       TEXT NOT NULL,                -- '' for pass-through
            final_model   TEXT NOT NULL,                -- '' when nobody answered
            status        INTEGER NOT NULL,
            cache_class   TEXT NOT NULL,                -- hit (hit, semantic) | miss | none
            escalated     INTEGER NOT NULL,             -- 1: more than one tier called
            n             BIGINT NOT NULL,
            cost_usd      REAL NOT NULL,
            input_tokens  BIGINT NOT NULL,
            output_tokens BIGINT NOT NULL,
            PRIMARY KEY (span, bucket_start, profile, final_model, status, cache_class, escalated)
        );
        CREATE TABLE dash_hourly_keys (
            span          INTEGER NOT NULL,
            bucket_start  BIGINT NOT NULL,
            key_name      TEXT NOT NULL,                -- '' for none
            failed        INTEGER NOT NULL,             -- 1: status >= 400
            n             BIGINT NOT NULL,
            cost_usd      REAL NOT NULL,
            PRIMARY KEY (span, bucket_start, key_name, failed)
        );
        CREATE TABLE dash_hourly_latency (
            span          INTEGER NOT NULL,
            bucket_start  BIGINT NOT NULL,
            profile       TEXT NOT NULL,
            le_ms         INTEGER NOT NULL,             -- upper bound of the latency bucket (thrifty.ui.rollup)
            n             BIGINT NOT NULL,
            PRIMARY KEY (span, bucket_start, profile, le_ms)
        );
        CREATE TABLE dash_rollup_state (
            name       TEXT PRIMARY KEY,
            done_until BIGINT NOT NULL                  -- 'hourly' / 'daily': every hour / day before this is rolled up
        );
        """,
    ),
    (
        "0009_hold_leases",
        """
        ALTER TABLE reservations ADD COLUMN expires REAL; -- unix time the hold lapses unless its replica renews it; NULL: created + stale_after_s
        CREATE INDEX reservations_owner ON reservations(owner);
        """,
    ),
    (
        "0010_artefact_versions",
        """
        CREATE TABLE artefact_versions (
            profile  TEXT PRIMARY KEY,
            version  BIGINT NOT NULL,                  -- bumped by every publish; replicas reload when it moves
            sha256   TEXT NOT NULL,                    -- digest of the artefact published
            path     TEXT,                             -- where it was loaded from
            updated  REAL NOT NULL,
            source   TEXT                              -- who published it: host|pid of a replica, or cli
        );
        """,
    ),
    (
        "0011_estimated_tokens",
        """
        ALTER TABLE requests ADD COLUMN tokens_estimated INTEGER;  -- 1: the upstream reported no usage, the counts are estimates
        ALTER TABLE steps ADD COLUMN tokens_estimated INTEGER;     -- 1: that tier's counts are estimates; NULL: no answer
        """,
    ),
    (
        "0012_dash_budget_refusals",
        """
        CREATE TABLE budget_refusals (                 -- requests a budget refused before any model ran (no requests row)
            hour      BIGINT NOT NULL,                 -- unix time of the UTC hour's start
            key_name  TEXT NOT NULL,                   -- '' for none
            profile   TEXT NOT NULL,                   -- '' for pass-through
            scope     TEXT NOT NULL,                   -- the limit that refused: key | profile
            n         BIGINT NOT NULL,
            last      REAL NOT NULL,                   -- unix time of the latest refusal
            PRIMARY KEY (hour, key_name, profile, scope)
        );
        """,
    ),
    ("0012_dash_prompt_search", "-- a trigram index of requests.prompt per engine: thrifty.store.search.install (MIGRATION_STEPS)"),
    ("0012_dash_shots", "ALTER TABLE steps ADD COLUMN shots TEXT;  -- JSON list: ids of the few-shot examples the tier got"),
    (
        "0014_loop4_audit_sample_prob",
        "ALTER TABLE audits ADD COLUMN sample_prob REAL;  -- audit probability when not uniform; NULL: uniform",
    ),
    (
        "0015_leader_leases",
        """
        CREATE TABLE learner_leases (                   -- one learner per profile across the processes on this store
            profile       TEXT PRIMARY KEY,
            holder        TEXT NOT NULL,                -- host|pid|start of the process leading (thrifty.store.leases)
            term          BIGINT NOT NULL,              -- +1 at every change of holder: a leader's writes are fenced by it
            expires       REAL NOT NULL,                -- unix time the lease lapses unless its holder renews it
            refit_at      BIGINT NOT NULL,              -- done audits the last refit began on: a new leader counts `every` from here
            guard_version BIGINT NOT NULL,              -- the artefact version the guardrail state below applies to
            guard_offset  REAL NOT NULL,                -- the guardrail's offset on that version's thresholds (followers apply it)
            guard_floor   REAL,                         -- its floor; NULL: none
            updated       REAL NOT NULL
        );
        """,
    ),
]

#: migrations whose work is Python (engine-specific, with a fallback): run after their SQL, in the same transaction
MIGRATION_STEPS: dict[str, Callable[[Any], None]] = {"0012_dash_prompt_search": install_prompt_search}


#: PostgreSQL text of the migrations whose portable SQL cannot say it (SQLite-only date functions)
PG_OVERRIDES: dict[str, str] = {
    "0005_spend_periods": """
        CREATE TABLE spend_period (
            scope     TEXT NOT NULL,
            name      TEXT NOT NULL,
            period    TEXT NOT NULL,
            spent_usd REAL NOT NULL DEFAULT 0,
            PRIMARY KEY (scope, name, period)
        );
        INSERT INTO spend_period (scope, name, period, spent_usd)
            SELECT scope, name, kind || to_char(to_timestamp(created) AT TIME ZONE 'UTC', fmt) AS period, SUM(cost_usd)
            FROM (SELECT 'key' AS scope, key_name AS name, created, cost_usd FROM requests WHERE key_name IS NOT NULL
                  UNION ALL
                  SELECT 'profile', profile, created, cost_usd FROM requests WHERE profile IS NOT NULL) AS spends,
                 (SELECT 'day:' AS kind, 'YYYY-MM-DD' AS fmt UNION ALL SELECT 'month:', 'YYYY-MM') AS kinds
            GROUP BY scope, name, period;
    """,
}
