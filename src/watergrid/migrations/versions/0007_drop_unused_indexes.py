"""drop indexes no query uses

Every report writes into these tables; each of these indexes cost an entry per row and
served nothing: order_follower.order_id is the leading column of the unique
(order_id, person_id) index, every due_item query on due_at also asks for pending items
(ix_due_item_state_due_at), and no query looks outbox messages up by person or
idempotency keys up by order (docs/performance.md).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 00:10:00
"""

from __future__ import annotations

from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

DROPPED = (
    ('order_follower', 'ix_order_follower_order_id', ['order_id']),
    ('due_item', 'ix_due_item_due_at', ['due_at']),
    ('outbox', 'ix_outbox_person_id', ['person_id']),
    ('idempotency_key', 'ix_idempotency_key_order_id', ['order_id']),
)


def upgrade() -> None:
    for table, name, _ in DROPPED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(name)


def downgrade() -> None:
    for table, name, cols in DROPPED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(name, cols, unique=False)
