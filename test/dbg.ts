import net from 'node:net';
const squatter = net.createServer().listen(23456, '127.0.0.1');
await new Promise((resolve) => squatter.once('listening', resolve));
console.log('listening');
