import type { DataSource } from 'typeorm';

/** RFC 8628 §3.2: the polling interval (seconds) when the device authorization response names none (oidc-provider names none). */
export const DEVICE_POLL_INTERVAL_SEC = 5;
/** RFC 8628 §3.5: `slow_down` adds this many seconds to the interval, for that request and all later ones. */
export const SLOW_DOWN_STEP_SEC = 5;
/** A poll this many seconds early still counts as on time (network jitter, clients that round down). */
const TOLERANCE_SEC = 1;
/** The `oauth_models.model` of a device code's polling state (`payload`: `{ at, interval, slow }`, `id`: the device code). */
export const DEVICE_POLL_MODEL = 'DevicePoll';

/**
 * Records a token request polling with device code `deviceCode` and tells whether it came too
 * soon: less than the current interval (minus a second's tolerance) after the previous poll. A
 * too-early poll is answered `slow_down` and raises the interval by {@link SLOW_DOWN_STEP_SEC}
 * for every later poll (RFC 8628 §3.5); oidc-provider 9 has no such rule of its own. The state is
 * one row per device code in `oauth_models` (an atomic upsert, so replicas agree; kept an hour,
 * past the code's own 10 minutes; none for a code that does not exist), read with PostgreSQL's clock.
 */
export async function pollTooSoon(db: DataSource, deviceCode: string): Promise<boolean> {
  const rows = await db.query<{ slow: boolean }[]>(
    `INSERT INTO oauth_models AS m (model, id, payload, expires_at)
     SELECT $1, $2, jsonb_build_object('at', extract(epoch FROM now()), 'interval', $3::int, 'slow', false), now() + interval '1 hour'
     WHERE EXISTS (SELECT 1 FROM oauth_models WHERE model = 'DeviceCode' AND id = $2)
     ON CONFLICT (model, id) DO UPDATE SET payload = CASE
       WHEN extract(epoch FROM now()) - (m.payload->>'at')::float8 < (m.payload->>'interval')::float8 - $5
         THEN jsonb_build_object('at', extract(epoch FROM now()), 'interval', (m.payload->>'interval')::int + $4::int, 'slow', true)
       ELSE jsonb_build_object('at', extract(epoch FROM now()), 'interval', (m.payload->>'interval')::int, 'slow', false) END
     RETURNING (payload->>'slow')::boolean AS slow`,
    [DEVICE_POLL_MODEL, deviceCode.slice(0, 200), DEVICE_POLL_INTERVAL_SEC, SLOW_DOWN_STEP_SEC, TOLERANCE_SEC],
  );
  return rows[0]?.slow === true;
}
