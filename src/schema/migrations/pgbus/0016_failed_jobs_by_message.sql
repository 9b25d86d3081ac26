-- The dashboard's job page lists a message's failed runs (attempts, errors with stacks), and
-- its job list tells a job waiting for a retry from a running one by its last failure: both
-- look failures up by message, which without this index is a scan of pgbus.failed_jobs.
CREATE INDEX failed_jobs_message_idx ON pgbus.failed_jobs (queue_name, msg_id, attempt);
