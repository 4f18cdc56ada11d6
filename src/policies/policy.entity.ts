import { Check, Column, CreateDateColumn, Entity, PrimaryGeneratedColumn, UpdateDateColumn } from 'typeorm';

/** One allow or deny rule; see `policy-evaluator.ts` for how rules combine. */
@Entity({ name: 'policies' })
@Check('policies_subject_type_check', `subject_type IN ('role', 'userId', 'apiKeyId', 'group')`)
@Check('policies_effect_check', `effect IN ('allow', 'deny')`)
export class PolicyEntity {
  @PrimaryGeneratedColumn('uuid')
  id!: string;

  @Column({ name: 'subject_type', type: 'text' })
  subjectType!: 'role' | 'userId' | 'apiKeyId' | 'group';

  @Column({ name: 'subject_value', type: 'text' })
  subjectValue!: string;

  @Column({ type: 'text' })
  effect!: 'allow' | 'deny';

  @Column({ type: 'text', array: true })
  operations!: string[];

  @Column({ type: 'text', array: true })
  targets!: string[];

  @Column({ type: 'text', nullable: true })
  description!: string | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt!: Date;
}
