// A background pass that runs at most once at a time (the mail and Security Event Token outboxes):
// a kick while it runs asks for exactly one more pass after it, so work that arrived mid-pass is
// not missed and passes never overlap.
export function coalescedPass(pass: () => Promise<unknown>, onError: (err: unknown) => void) {
  let running: Promise<void> | undefined;
  let again = false;
  return {
    kick(): void {
      if (running) {
        again = true;
        return;
      }
      running = (async () => {
        do {
          again = false;
          await pass();
        } while (again);
      })()
        .catch(onError)
        .finally(() => {
          running = undefined;
        });
    },
    /** Lets a running pass finish, with no further pass after it (shutdown). */
    async settle(): Promise<void> {
      again = false;
      await running;
    },
  };
}
