// Starts the npm package telegram-test-api (a Telegram Bot API emulator) for tests/test_telegram_emulator.py.
// Usage: node telegram_test_api.js PACKAGE_DIR. Listens on 127.0.0.1 on a free port, prints
// {"url": ...} on one line once it listens, and stops when its stdin closes (its test ended or died).
//
// Two of its answers are not what the Bot API sends, and python-telegram-bot (rightly) refuses
// them; this corrects those two and nothing else:
// - getMe has no `is_bot` (the Bot API always sends it; python-telegram-bot needs it to start);
// - the messages a bot sends are dated in milliseconds, not the Bot API's seconds.
'use strict';
const http = require('http');
const TelegramServer = require(process.argv[2]);

class Emulator extends TelegramServer {
    addBotMessage(rawMessage, botToken) {
        const message = super.addBotMessage(rawMessage, botToken);
        return { ...message, date: Math.floor(message.date / 1000) };
    }
}

const GET_ME = /^\/bot[^/]+\/getMe(\?|$)/;

function main() {
    const emulator = new Emulator({ host: '127.0.0.1' });
    const app = emulator.webServer;  // the package's own express app: every route but getMe
    const server = http.createServer((req, res) => {
        if (!GET_ME.test(req.url)) {
            app(req, res);
            return;
        }
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify({
            ok: true, result: { id: 666, is_bot: true, first_name: 'Test First name', username: 'TestNameBot' },
        }));
    });
    server.listen(0, '127.0.0.1', () => {
        process.stdout.write(JSON.stringify({ url: `http://127.0.0.1:${server.address().port}` }) + '\n');
    });
    server.on('error', (error) => {
        process.stderr.write(`telegram-test-api did not start: ${error}\n`);
        process.exit(1);
    });
    const stop = () => process.exit(0);
    process.stdin.on('end', stop).on('close', stop).resume();
    process.on('SIGTERM', stop);
}

main();
