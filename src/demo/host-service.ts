/** A host service on 127.0.0.1:9000 that no cell should ever reach. */
import * as http from 'node:http';

const server = http.createServer((_req, res) => res.end("the HOST's secret service\n"));
server.listen(9000, '127.0.0.1', () => process.stdout.write('{"ready":"host"}\n'));
process.on('SIGTERM', () => process.exit(0));
