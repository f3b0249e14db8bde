"""The job store as of team scale: jobs, attempts, events, workers, teams, users, tokens, audit.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TIME = sa.Double


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("spec", JSONB, nullable=False),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False, server_default=""),
        sa.Column("checkpoint_uri", sa.Text, nullable=False),
        sa.Column("output_uri", sa.Text, nullable=False),
        sa.Column("options", JSONB, nullable=False, server_default="{}"),
        sa.Column("created", TIME, nullable=False),
        sa.Column("updated", TIME, nullable=False),
        sa.Column("ended", TIME),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("owner", sa.Text),
        sa.Column("heartbeat", TIME),
        sa.Column("team", sa.Text, nullable=False, server_default="default"),
        sa.Column("submitted_by", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("jobs_by_name", "jobs", ["name", "created"])
    op.create_index("jobs_by_team", "jobs", ["team", "created"])
    op.create_index("jobs_by_state", "jobs", ["state"])
    op.create_table(
        "attempts",
        sa.Column("job_id", sa.Text, sa.ForeignKey("jobs.id"), primary_key=True),
        sa.Column("n", sa.Integer, primary_key=True),
        sa.Column("placement", JSONB, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("handle", JSONB),
        sa.Column("message", sa.Text, nullable=False, server_default=""),
        sa.Column("native_state", sa.Text, nullable=False, server_default=""),
        sa.Column("interruptions", sa.Integer, nullable=False, server_default="0"),
        sa.Column("submitted", TIME),
        sa.Column("started", TIME),
        sa.Column("ended", TIME),
        sa.Column("usage", JSONB),
        sa.Column("last_checkpoint", TIME),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("job_id", sa.Text, sa.ForeignKey("jobs.id"), nullable=False),
        sa.Column("attempt", sa.Integer),
        sa.Column("time", TIME, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("events_by_job", "events", ["job_id", "id"])
    op.create_index("events_by_kind", "events", ["job_id", "kind", "id"])
    op.create_table(
        "workers",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started", TIME, nullable=False),
        sa.Column("heartbeat", TIME, nullable=False),
    )
    op.create_table(
        "teams",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("created", TIME, nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("team", sa.Text, sa.ForeignKey("teams.name"), nullable=False),
        sa.Column("admin", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created", TIME, nullable=False),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("token_hash", sa.Text, nullable=False, unique=True),
        sa.Column("label", sa.Text, nullable=False, server_default=""),
        sa.Column("created", TIME, nullable=False),
        sa.Column("revoked", TIME),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("time", TIME, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("detail", JSONB, nullable=False, server_default="{}"),
        sa.Column("team", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("audit_by_team", "audit", ["team", "id"])


def downgrade() -> None:
    for table in ("audit", "tokens", "users", "teams", "workers", "events", "attempts", "jobs"):
        op.drop_table(table)
