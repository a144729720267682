import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** A throwaway self-signed certificate for localhost (openssl), and a way to remove it. */
export function selfSignedCert(): { cert: Buffer; key: Buffer; remove: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-tls-'));
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-subj',
      '/CN=localhost',
      '-days',
      '1',
      '-keyout',
      path.join(dir, 'key.pem'),
      '-out',
      path.join(dir, 'cert.pem'),
    ],
    { stdio: 'ignore' },
  );
  return {
    cert: fs.readFileSync(path.join(dir, 'cert.pem')),
    key: fs.readFileSync(path.join(dir, 'key.pem')),
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
