/**
 * Sets an environment variable for the rest of a test file (fixtures read it, in this
 * thread and in the worker threads started after it) and returns what puts it back, for
 * the file's after().
 */
export function setEnv(name: string, value: string): () => void {
  const saved = process.env[name];
  process.env[name] = value;
  return () => {
    if (saved === undefined) delete process.env[name];
    else process.env[name] = saved;
  };
}
