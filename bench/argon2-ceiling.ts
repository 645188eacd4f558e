// The raw argon2id ceiling: verifications per second at the given parameters with `threads`
// verifications in flight (argon2 runs them on libuv's thread pool, as the server does), in a
// process of its own so nothing else shares its event loop. Prints one JSON line.
//
//   node bench/argon2-ceiling.ts SECONDS THREADS MEMORY_KIB TIME_COST PARALLELISM
import argon2 from 'argon2';

const [seconds, threads, memoryCost, timeCost, parallelism] = process.argv.slice(2).map(Number) as [number, number, number, number, number];
const password = 'bench password 123';
const hash = await argon2.hash(password, { type: argon2.argon2id, memoryCost, timeCost, parallelism });

const latencies: number[] = [];
const started = performance.now();
const end = started + seconds * 1000;
await Promise.all(
  Array.from({ length: threads }, async () => {
    while (performance.now() < end) {
      const t = performance.now();
      if (!(await argon2.verify(hash, password))) throw new Error('argon2 verify failed');
      latencies.push(performance.now() - t);
    }
  }),
);
process.stdout.write(JSON.stringify({ count: latencies.length, seconds: (performance.now() - started) / 1000, latencies }) + '\n');
