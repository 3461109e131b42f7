/**
 * @herenow/react: presence hooks and the faces at the top of the page.
 *
 * ```tsx
 * import "@herenow/react/styles.css";
 * <PresenceProvider room="design-review" user={{ name: "Ada" }}>
 *   <AvatarStack max={5} />
 * </PresenceProvider>
 * ```
 */
export {
  PresenceProvider,
  shallowEqual,
  useActivity,
  useOthers,
  usePresence,
  usePresenceClient,
  usePresenceSelector,
  useSelf,
  useStatus,
  useTyping,
  type PresenceProviderProps,
  type TypingApi,
} from "./hooks";
export { AvatarStack, DEFAULT_PALETTE, UserAvatar, type AvatarStackProps, type UserAvatarProps } from "./AvatarStack";
export { ActivityLog, type ActivityLogProps } from "./ActivityLog";
export { TypingIndicator, type TypingIndicatorProps } from "./TypingIndicator";
export { displayName, joinNames, stackLabel, typingPhrase, isAway } from "./names";
export { usePrefersReducedMotion } from "./motion";
