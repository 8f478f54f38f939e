// Minimal RFC 6455 WebSocket endpoints for the tests: a server side for the mock worker and a
// client side for the Chrome DevTools protocol. Node 20 has neither built in. Supports text,
// binary, fragmented messages, ping/pong and close, but no extensions (no permessage-deflate).

import { createHash, randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import http from "node:http";

const HANDSHAKE_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const OPCODE_CONTINUATION = 0x0;
const OPCODE_TEXT = 0x1;
const OPCODE_BINARY = 0x2;
const OPCODE_CLOSE = 0x8;
const OPCODE_PING = 0x9;
const OPCODE_PONG = 0xa;

/**
 * One open WebSocket. Emits "message" (string for text, Buffer for binary) and
 * "close" (code, reason) once.
 */
export class WebSocketConnection extends EventEmitter {
  constructor(socket, { maskOutgoing }) {
    super();
    this.socket = socket;
    this.maskOutgoing = maskOutgoing;
    this.buffer = Buffer.alloc(0);
    this.fragments = [];
    this.fragmentOpcode = null;
    this.closed = false;
    this.closeSent = false;

    socket.setNoDelay(true);
    socket.on("data", (chunk) => this.onData(chunk));
    socket.on("close", () => this.finish(1006, ""));
    socket.on("error", () => this.finish(1006, ""));
  }

  get isOpen() {
    return !this.closed && !this.closeSent;
  }

  send(data) {
    if (!this.isOpen) {
      return;
    }
    if (typeof data === "string") {
      this.writeFrame(OPCODE_TEXT, Buffer.from(data, "utf8"));
    } else {
      this.writeFrame(OPCODE_BINARY, Buffer.from(data));
    }
  }

  sendJson(value) {
    this.send(JSON.stringify(value));
  }

  /** Starts the closing handshake. The TCP socket ends when the peer's close frame arrives or after 1 s. */
  close(code = 1000, reason = "") {
    if (this.closed || this.closeSent) {
      return;
    }
    const reasonBytes = Buffer.from(reason, "utf8");
    const payload = Buffer.alloc(2 + reasonBytes.length);
    payload.writeUInt16BE(code, 0);
    reasonBytes.copy(payload, 2);
    this.writeFrame(OPCODE_CLOSE, payload);
    this.closeSent = true;
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  /** Drops the TCP connection without a closing handshake, as a crashed peer would. */
  destroy() {
    this.socket.destroy();
  }

  writeFrame(opcode, payload) {
    const length = payload.length;
    let header;
    if (length < 126) {
      header = Buffer.alloc(2);
      header[1] = length;
    } else if (length < 65536) {
      header = Buffer.alloc(4);
      header[1] = 126;
      header.writeUInt16BE(length, 2);
    } else {
      header = Buffer.alloc(10);
      header[1] = 127;
      header.writeBigUInt64BE(BigInt(length), 2);
    }
    header[0] = 0x80 | opcode;

    if (!this.maskOutgoing) {
      this.socket.write(Buffer.concat([header, payload]));
      return;
    }
    header[1] |= 0x80;
    const mask = randomBytes(4);
    const masked = Buffer.alloc(length);
    for (let i = 0; i < length; i += 1) {
      masked[i] = payload[i] ^ mask[i & 3];
    }
    this.socket.write(Buffer.concat([header, mask, masked]));
  }

  onData(chunk) {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    for (;;) {
      const frame = this.readFrame();
      if (frame === null) {
        return;
      }
      this.handleFrame(frame);
    }
  }

  /** Removes one complete frame from the buffer, or returns null when it is not all here yet. */
  readFrame() {
    const buffer = this.buffer;
    if (buffer.length < 2) {
      return null;
    }
    const fin = (buffer[0] & 0x80) !== 0;
    const opcode = buffer[0] & 0x0f;
    const masked = (buffer[1] & 0x80) !== 0;
    let length = buffer[1] & 0x7f;
    let offset = 2;
    if (length === 126) {
      if (buffer.length < 4) {
        return null;
      }
      length = buffer.readUInt16BE(2);
      offset = 4;
    } else if (length === 127) {
      if (buffer.length < 10) {
        return null;
      }
      length = Number(buffer.readBigUInt64BE(2));
      offset = 10;
    }
    const maskOffset = offset;
    if (masked) {
      offset += 4;
    }
    if (buffer.length < offset + length) {
      return null;
    }

    let payload = buffer.subarray(offset, offset + length);
    if (masked) {
      const mask = buffer.subarray(maskOffset, maskOffset + 4);
      payload = Buffer.from(payload);
      for (let i = 0; i < payload.length; i += 1) {
        payload[i] ^= mask[i & 3];
      }
    }
    this.buffer = buffer.subarray(offset + length);
    return { fin, opcode, payload };
  }

  handleFrame({ fin, opcode, payload }) {
    if (opcode === OPCODE_PING) {
      this.writeFrame(OPCODE_PONG, payload);
      return;
    }
    if (opcode === OPCODE_PONG) {
      return;
    }
    if (opcode === OPCODE_CLOSE) {
      const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
      const reason = payload.length > 2 ? payload.subarray(2).toString("utf8") : "";
      if (!this.closeSent) {
        this.writeFrame(OPCODE_CLOSE, payload.subarray(0, 2));
        this.closeSent = true;
      }
      this.finish(code, reason);
      this.socket.end();
      return;
    }

    if (opcode !== OPCODE_CONTINUATION) {
      this.fragmentOpcode = opcode;
      this.fragments = [];
    }
    this.fragments.push(Buffer.from(payload));
    if (!fin) {
      return;
    }
    const data = Buffer.concat(this.fragments);
    const messageOpcode = this.fragmentOpcode;
    this.fragments = [];
    this.fragmentOpcode = null;
    this.emit("message", messageOpcode === OPCODE_TEXT ? data.toString("utf8") : data);
  }

  finish(code, reason) {
    if (this.closed) {
      return;
    }
    this.closed = true;
    this.emit("close", code, reason);
  }
}

/**
 * Completes the server side of a WebSocket handshake for an HTTP "upgrade" event and returns
 * the connection, or responds with 400 and returns null when the request is not a WebSocket upgrade.
 */
export function acceptWebSocket(request, socket, head) {
  const key = request.headers["sec-websocket-key"];
  if (request.headers.upgrade?.toLowerCase() !== "websocket" || !key) {
    socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
    return null;
  }
  const accept = createHash("sha1").update(key + HANDSHAKE_GUID).digest("base64");
  socket.write(
    "HTTP/1.1 101 Switching Protocols\r\n" +
      "Upgrade: websocket\r\n" +
      "Connection: Upgrade\r\n" +
      `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
  );
  const connection = new WebSocketConnection(socket, { maskOutgoing: false });
  if (head && head.length) {
    connection.onData(head);
  }
  return connection;
}

/** Opens a client WebSocket to a ws:// URL and resolves once the handshake completes. */
export function connectWebSocket(url) {
  const target = new URL(url);
  const key = randomBytes(16).toString("base64");
  return new Promise((resolve, reject) => {
    const request = http.request({
      host: target.hostname,
      port: target.port,
      path: target.pathname + target.search,
      headers: {
        Connection: "Upgrade",
        Upgrade: "websocket",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
      },
    });
    request.on("upgrade", (response, socket, head) => {
      const expected = createHash("sha1").update(key + HANDSHAKE_GUID).digest("base64");
      if (response.headers["sec-websocket-accept"] !== expected) {
        socket.destroy();
        reject(new Error(`WebSocket handshake to ${url} returned a wrong Sec-WebSocket-Accept`));
        return;
      }
      const connection = new WebSocketConnection(socket, { maskOutgoing: true });
      if (head && head.length) {
        connection.onData(head);
      }
      resolve(connection);
    });
    request.on("response", (response) => {
      reject(new Error(`WebSocket handshake to ${url} failed with HTTP ${response.statusCode}`));
    });
    request.on("error", reject);
    request.end();
  });
}
