// A greeting echo server in its own process, for load tests that must not
// share the test runner's descriptors: prints its port, then serves until
// stdin closes.
import net from "node:net";
const server = net.createServer((s) => {
  s.on("error", () => {});
  s.write("hi\n");
  s.pipe(s);
});
server.listen(0, "127.0.0.1", () => console.log(server.address().port));
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
