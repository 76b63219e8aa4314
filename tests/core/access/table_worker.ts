/** A thread that admits and releases one client `rounds` times on a shared table (client_table.test.ts). */
import { ClientTable, type ClientTableHandle } from "../../../src/core/access/client_table.ts";

const scope = globalThis as unknown as {
  onmessage: (e: MessageEvent<{ handle: ClientTableHandle; rounds: number }>) => void;
  postMessage(m: unknown): void;
};
scope.onmessage = ({ data }) => {
  const table = new ClientTable(data.handle);
  let refused = 0;
  for (let i = 0; i < data.rounds; i++) {
    const slot = table.admit({ family: 4, hi: 0, lo: (i & 7) + 1 }, { maxOpen: 1_000_000 }, i);
    if (typeof slot === "number") table.release(slot);
    else refused++;
  }
  scope.postMessage(refused);
};
