/** Host services no cell should ever reach: one on 127.0.0.1:9000, and one
 * on the wildcard 0.0.0.0:2222 (think sshd). */
import * as http from 'node:http';

let ready = 0;
const up = () => {
  if (++ready === 2) process.stdout.write('{"ready":"host"}\n');
};
http
  .createServer((_req, res) => res.end("the HOST's secret service\n"))
  .listen(9000, '127.0.0.1', up);
http
  .createServer((_req, res) => res.end("the HOST's wildcard service\n"))
  .listen(2222, '0.0.0.0', up);
process.on('SIGTERM', () => process.exit(0));
