import type { MigrationInterface, QueryRunner } from 'typeorm';

export class AddUpstreamServers1795400100000 implements MigrationInterface {
  name = 'AddUpstreamServers1795400100000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE upstream_servers (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        name text NOT NULL,
        transport text NOT NULL,
        command text,
        args text[] NOT NULL DEFAULT '{}',
        env jsonb NOT NULL DEFAULT '{}',
        cwd text,
        url text,
        headers jsonb NOT NULL DEFAULT '{}',
        enabled boolean NOT NULL DEFAULT true,
        description text,
        timeout_ms integer NOT NULL DEFAULT 60000,
        tool_filter jsonb NOT NULL DEFAULT '{}',
        source text NOT NULL DEFAULT 'api',
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT upstream_servers_transport_check CHECK (transport IN ('stdio', 'streamable_http', 'sse')),
        CONSTRAINT upstream_servers_timeout_check CHECK (timeout_ms BETWEEN 100 AND 3600000),
        CONSTRAINT upstream_servers_source_check CHECK (source IN ('api', 'file')),
        CONSTRAINT upstream_servers_name_format CHECK (name ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
        CONSTRAINT upstream_servers_stdio_command CHECK (transport <> 'stdio' OR command IS NOT NULL),
        CONSTRAINT upstream_servers_http_url CHECK (transport = 'stdio' OR url IS NOT NULL)
      )`);
    await q.query('CREATE UNIQUE INDEX upstream_servers_name_key ON upstream_servers (name)');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE upstream_servers');
  }
}
