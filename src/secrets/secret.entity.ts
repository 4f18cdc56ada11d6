import { Check, Column, CreateDateColumn, Entity, Index, JoinColumn, ManyToOne, PrimaryGeneratedColumn, Unique, UpdateDateColumn } from 'typeorm';
import { UpstreamServerEntity } from '../upstreams/upstream-server.entity.js';

/**
 * One encrypted secret: a user's own (`owner` = user id, or principal id for principals
 * without a user) or a server's shared one (`owner` = `*`). Only ciphertext is stored; the
 * AES-GCM additional data binds it to (owner, server, name), so a row moved elsewhere does
 * not decrypt. Deleted with its server.
 */
@Entity({ name: 'secrets' })
@Unique('secrets_owner_server_name_key', ['owner', 'server', 'name'])
@Check('secrets_name_format', `name ~ '^[A-Za-z_][A-Za-z0-9_]{0,127}$'`)
@Index('secrets_server', ['server'])
export class SecretEntity {
  @PrimaryGeneratedColumn('uuid')
  id!: string;

  @Column({ type: 'text' })
  owner!: string;

  @Column({ type: 'text' })
  server!: string;

  @ManyToOne(() => UpstreamServerEntity, { onDelete: 'CASCADE', onUpdate: 'CASCADE' })
  @JoinColumn({ name: 'server', referencedColumnName: 'name', foreignKeyConstraintName: 'secrets_server_fkey' })
  upstream?: UpstreamServerEntity;

  @Column({ type: 'text' })
  name!: string;

  @Column({ name: 'key_id', type: 'text' })
  keyId!: string;

  @Column({ type: 'bytea' })
  nonce!: Buffer;

  @Column({ type: 'bytea' })
  ciphertext!: Buffer;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt!: Date;
}
