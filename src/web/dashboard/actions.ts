import { PgbusError, ValidationError } from "../../errors.ts";
import { type CancelStatus, cancelJob } from "../../queue/cancel.ts";
import { discardDeadLetters, listDeadLetters, retryDeadLetters } from "../../queue/admin.ts";
import { QueueClient } from "../../queue/client.ts";
import { isDlqName, validateQueueName } from "../../queue/names.ts";
import { pauseQueue, resumeQueue } from "../../queue/pause.ts";
import { setTaskEnabled } from "../../process/recurring-store.ts";
import { parseMessageId, runJobNow } from "./jobs-store.ts";
import { BULK_CAP } from "./pages/dlq.ts";
import type { DashboardRole } from "./security.ts";
import type { DashboardStore } from "./store.ts";

/**
 * What the dashboard's buttons do. Each action reuses the admin function of queue/ that
 * `pgbus queues` and `pgbus dlq` use, inside the store's transaction with its statement
 * timeout, and answers with a notice and where to go next.
 */

/** One action, as the audit hook sees it: refused ones included. */
export interface AuditEntry {
  action: string;
  role: DashboardRole | null;
  /** The form's fields, minus the CSRF token. */
  target: Record<string, string | string[]>;
  outcome: "done" | "refused" | "failed";
  /** What happened, or why it was refused or failed. */
  detail: string;
  at: Date;
  request: Request;
}

export type AuditHook = (entry: AuditEntry) => void | Promise<void>;

export interface ActionResult {
  notice: string;
  /** A page to go to instead of the one the form came from (e.g. the retried job's new page). */
  location?: string;
}

export const ACTIONS = ["pause", "resume", "purge", "retry", "cancel", "delete", "dlq-retry", "dlq", "recurring"] as const;
export type ActionName = (typeof ACTIONS)[number];

function field(form: FormData, name: string): string {
  const value = form.get(name);
  if (typeof value !== "string" || value === "") throw new ValidationError("INVALID_OPTION", `the form has no ${name}`);
  return value;
}

async function deadLetterIds(store: DashboardStore, queue: string, form: FormData): Promise<string[]> {
  if (form.get("all") !== "1") {
    const ids = form.getAll("id").map((id) => parseMessageId(String(id)));
    if (ids.length === 0) throw new ValidationError("INVALID_OPTION", "select at least one dead letter");
    return ids;
  }
  const job = form.get("job");
  const letters = await store.run((db) => listDeadLetters(db, queue, BULK_CAP));
  return letters.filter((letter) => !job || letter.job === job).map((letter) => letter.id);
}

/** Who cancels, as recorded on the archived message (`pgbus_cancelled_by`); the audit hook knows the person. */
const CANCELLED_BY = "dashboard";

const CANCEL_NOTICES: Record<Exclude<CancelStatus, "not_found">, string> = {
  cancelled: "cancelled: archived as cancelled, it will not run",
  cancelling:
    "cancelling: its run was signalled to stop (ctx.signal); it is archived as cancelled when that run ends " +
    "(a job waiting for its retry: when it is next claimed) and never runs again",
  already_finished: "already finished (done, dead-lettered or deleted): nothing to cancel",
};

/** Cancels one job (as bus.cancel and `pgbus cancel` do): a waiting one at once, a running one through its signal. */
async function cancel(store: DashboardStore, queue: string, form: FormData): Promise<ActionResult> {
  if (isDlqName(queue))
    throw new ValidationError("INVALID_OPTION", `${queue} is a dead-letter queue: its messages never run (retry or discard them)`);
  const id = parseMessageId(field(form, "id"));
  const { status } = await store.run((db) => cancelJob(db, queue, id, { by: CANCELLED_BY }));
  if (status === "not_found") throw new PgbusError("INVALID_OPTION", `${queue} never had a message ${id}`);
  return { notice: `message ${id} of ${queue}: ${CANCEL_NOTICES[status]}` };
}

/** Enables or disables a recurring task (as `pgbus recurring enable|disable` does). */
async function toggleRecurring(store: DashboardStore, form: FormData): Promise<ActionResult> {
  const key = field(form, "key");
  const enabled = form.get("enabled") === "1";
  if (!(await store.run((db) => setTaskEnabled(db, key, enabled))))
    throw new ValidationError("INVALID_OPTION", `no recurring task ${JSON.stringify(key)}`);
  return { notice: `${key}: ${enabled ? "enabled" : "disabled"}` };
}

export async function runAction(store: DashboardStore, base: string, name: ActionName, form: FormData): Promise<ActionResult> {
  if (name === "recurring") return toggleRecurring(store, form);
  const queue = validateQueueName(field(form, "queue"));
  switch (name) {
    case "pause":
      await store.run((db) => pauseQueue(db, queue, "dashboard"));
      return { notice: `paused ${queue}` };
    case "resume":
      await store.run((db) => resumeQueue(db, queue));
      return { notice: `resumed ${queue}` };
    case "purge": {
      const purged = await store.run((db) => new QueueClient(db).purgeQueue(queue));
      return { notice: `purged ${queue}: ${purged} messages deleted` };
    }
    case "retry": {
      const id = parseMessageId(field(form, "id"));
      if (!(await store.run((db) => runJobNow(db, queue, id))))
        throw new PgbusError("INVALID_OPTION", `message ${id} of ${queue} is not waiting (it is running, done or gone)`);
      return { notice: `message ${id} will run now` };
    }
    case "cancel":
      return cancel(store, queue, form);
    case "delete": {
      const id = parseMessageId(field(form, "id"));
      const deleted = await store.run((db) => new QueueClient(db).delete(queue, id));
      return {
        notice: deleted ? `deleted message ${id} of ${queue}` : `message ${id} of ${queue} was already gone`,
        location: `${base}/jobs?queue=${queue}`,
      };
    }
    case "dlq-retry": {
      if (!isDlqName(queue)) throw new ValidationError("INVALID_OPTION", `${queue} is not a dead-letter queue`);
      const id = parseMessageId(field(form, "id"));
      const { requeued } = await store.run((db) => retryDeadLetters(db, queue, { ids: [id] }));
      const source = queue.slice(0, -4);
      if (requeued.length === 0) return { notice: `dead letter ${id} was already gone`, location: `${base}/dlq?queue=${source}` };
      return { notice: `retried: now message ${requeued[0]} of ${source}`, location: `${base}/jobs/${source}/${requeued[0]}` };
    }
    case "dlq": {
      const op = field(form, "op");
      if (op !== "retry" && op !== "discard")
        throw new ValidationError("INVALID_OPTION", `invalid op ${JSON.stringify(op)}: retry or discard`);
      const ids = await deadLetterIds(store, queue, form);
      if (ids.length === 0) return { notice: "no dead letter matched" };
      if (op === "retry") {
        const { moved } = await store.run((db) => retryDeadLetters(db, queue, { ids }));
        return { notice: `retried ${moved.length} dead letters of ${queue}` };
      }
      const gone = await store.run((db) => discardDeadLetters(db, queue, { ids }));
      return { notice: `discarded ${gone.length} dead letters of ${queue}` };
    }
  }
}
